Feature: Notifications survive a Slack outage
  Scenario: A Slack outage delays but does not lose the notification
    Given the stack is running
    And Slack is down
    When I create a user named "foo" with email "foo@example.com"
    Then the notification is listed as "pending" with the error recorded
    And Slack was called but has accepted nothing
    When Slack is back
    Then Slack receives "User <id> created" on channel "#user"
    And the notification is listed as "sent"
    And Slack received exactly 1 message

Feature: Users and their Slack notification
  As the operator of the stack
  I want every new user announced on Slack
  So that the team sees sign-ups as they happen

  Background:
    Given the stack is running

  Scenario: Creating a user sends a Slack notification
    When I create a user named "foo" with email "foo@example.com"
    Then the response status is 201
    And Slack receives "User <id> created" on channel "#user"
    And the notification is listed as "sent"

  Scenario: A duplicate email is refused
    Given a user with email "foo@example.com" exists
    When I create a user named "other" with email "FOO@example.com"
    Then the response status is 409
    And the response is a problem of type "urn:flotilla:problem:conflict"

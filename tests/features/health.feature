Feature: Aggregated health
  Scenario: Every service answers pong on /health
    Given the stack is running
    When I ask the gateway for "/health"
    Then the response status is 200
    And every service answers "pong" with its time in milliseconds

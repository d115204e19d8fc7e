Feature: Accounts and signing in
  As a visitor of the stack's site
  I want to create an account and sign in with it
  So that the services know who I am

  Background:
    Given the stack is running

  Scenario: Signing up gives a profile, announced on Slack
    When I sign up as "Ada" with email "ada@example.com" and password "correct horse battery"
    Then the response status is 201
    And a user profile exists for "ada@example.com"
    And Slack receives "User <id> created" on channel "#user"

  Scenario: Signing in through the login form
    Given an account "ada@example.com" with password "correct horse battery"
    When I sign in as "ada@example.com" with password "correct horse battery"
    Then the response status is 303
    And I am signed in as "ada@example.com"

  Scenario: Wrong passwords are refused, and then so is every attempt for a while
    Given an account "ada@example.com" with password "correct horse battery"
    When I sign in as "ada@example.com" with password "not my password" 5 times
    Then the response status is 401
    And I am not signed in
    When I sign in as "ada@example.com" with password "correct horse battery"
    Then the response status is 429
    And I am not signed in

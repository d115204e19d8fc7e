Feature: The daily word
  As a signed-in player
  I want to find the day's word in six attempts
  So that my games count in the leaderboard

  Background:
    Given the stack is running

  Scenario: One player learns the word, the other finds it at once, and the leaderboard ranks them
    Given "Ada" and "Bob" are signed in
    When "Ada" plays six accepted guesses that are not the word
    Then the game of "Ada" is over and the word is revealed
    When "Bob" guesses the revealed word
    Then the game of "Bob" is won in 1 attempt
    And the day's leaderboard lists "Bob" then "Ada"

  Scenario: A guess that is not a word does not count
    Given "Ada" and "Bob" are signed in
    When "Ada" guesses "Q9"
    Then the response status is 422
    And "Ada" has made no attempt

  Scenario: Only signed-in players play
    When I ask the gateway for "/motus/today"
    Then the response status is 401
    And the response is a problem of type "urn:flotilla:problem:unauthorized"

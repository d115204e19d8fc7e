Feature: Key/value roundtrip and batch through the bus
  A pair sent over HTTP is published, stored by a consumer, published again
  and pushed to every websocket client. A batch is split into one message per
  item and stored whole when its last item arrives; the request waits for the
  reply.

  Scenario: A roundtrip comes back to the client on its websocket
    Given the stack is running
    And I am connected to the live feed
    When I send the key "colour" with the value "blue" on a roundtrip
    Then the response status is 202
    And "colour" = "blue" arrives on my websocket with my correlation id
    And the key "colour" is stored with the value "blue"

  Scenario: A batch is stored whole and listed
    Given the stack is running
    When I send a batch of 1000 items with the id "batch-1"
    Then the response status is 200
    And the batch is "done" with 1000 items
    And the stored batches list "batch-1" once, with 1000 items
    And batch "batch-1" holds 1000 items

  Scenario: Sending a batch again never stores it twice
    Given the stack is running
    And I sent a batch of 50 items with the id "again"
    When I send a batch of 50 items with the id "again"
    Then the response status is 200
    And the stored batches list "again" once, with 50 items

  Scenario: A batch nobody stores times out
    Given the stack is running without a kv consumer, waiting 200 ms for batches
    When I send a batch of 10 items with the id "lost"
    Then the response status is 504
    And the response is a problem of type "urn:flotilla:problem:gateway-timeout"

  Scenario: A batch over the limit is refused
    Given the stack is running
    When I send a batch of 100001 items with the id "huge"
    Then the response status is 422
    And the response is a problem of type "urn:flotilla:problem:validation"

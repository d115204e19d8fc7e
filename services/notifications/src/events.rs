//! What the notifications service consumes: `user.created` becomes a
//! message to `#user`.

use std::sync::Arc;

use async_trait::async_trait;
use flotilla_contracts::UserCreatedV1;
use flotilla_kit::consume::{Consume, HandlerError, Message, Staging};
use tokio::sync::Notify;

use crate::domain::{Channel, Status, Text};
use crate::store;

/// The channel user announcements go to, as in the seed.
const USER_CHANNEL: &str = "#user";

pub struct UserCreated {
    /// Status of new messages: pending with a webhook, stored without.
    pub status: Status,
    /// Wakes the sender once a message is committed.
    pub sender: Arc<Notify>,
}

#[async_trait]
impl Consume for UserCreated {
    type Event = UserCreatedV1;

    async fn handle(
        &self,
        tx: &mut Staging<'_>,
        event: UserCreatedV1,
        message: &Message,
    ) -> Result<(), HandlerError> {
        let channel = Channel::parse(USER_CHANNEL).expect("the user channel is valid");
        let text = Text::parse(&format!("User {} created", event.id))
            .map_err(|e| HandlerError::Permanent(e.to_owned()))?;
        store::insert(tx, &channel, &text, &message.id, self.status).await?;
        Ok(())
    }

    fn committed(&self) {
        self.sender.notify_one();
    }
}

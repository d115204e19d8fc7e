//! What the users service consumes: `account.created` from the auth
//! service becomes a user with the same email, once, announced as
//! `user.created` like any other.

use async_trait::async_trait;
use flotilla_contracts::{AccountCreatedV1, UserCreatedV1};
use flotilla_kit::consume::{Consume, HandlerError, Message, Staging};
use flotilla_kit::fields::{DisplayName, Email};

use crate::store;

/// Gives every new account its profile.
pub struct AccountCreated;

#[async_trait]
impl Consume for AccountCreated {
    type Event = AccountCreatedV1;

    async fn handle(
        &self,
        tx: &mut Staging<'_>,
        account: AccountCreatedV1,
        _message: &Message,
    ) -> Result<(), HandlerError> {
        let email = Email::parse(&account.email)
            .map_err(|e| HandlerError::Permanent(format!("email {e}")))?;
        let name = DisplayName::parse(&account.name)
            .map_err(|e| HandlerError::Permanent(format!("name {e}")))?;
        // Idempotent by email: a profile made through the API keeps its data.
        let Some(user) = store::insert_if_new(tx, &name, &email).await? else {
            return Ok(());
        };
        tx.stage(&UserCreatedV1 {
            id: user.id,
            name: user.name,
            email: user.email,
            created_at: user.created_at,
        })
        .await?;
        Ok(())
    }
}

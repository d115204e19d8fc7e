//! End-to-end tests over HTTP through the gateway of a real stack.

mod auth;
mod bad_input;
mod gateway;
mod kv;
mod motus;
mod notifications;
mod users;

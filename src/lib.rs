#![cfg_attr(test, allow(clippy::unwrap_used))]
//! agent-farm: run a team of AI coding agents in parallel on one git repository.
//!
//! The pure core ([`vocab`], [`plan`], [`ownership`], [`report`], [`record`]'s fold over [`events`])
//! is kept apart from the effectful shell ([`git`], [`runner`], [`cli`]). [`vocab`] is the leaf every
//! module may use: the names of statuses, phases and failure kinds.

pub mod cli;
pub mod error;
pub mod events;
pub mod fault;
pub mod git;
pub mod journal;
pub mod lock;
pub mod names;
pub mod ownership;
pub mod plan;
pub mod record;
pub mod recover;
pub mod report;
pub mod reporter;
pub mod runner;
pub mod session;
pub mod sim;
pub mod txn;
pub mod vocab;
pub mod watch;

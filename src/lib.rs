//! vapi-reconciler: keeps Vapi assistants equal to the desired agents stored in Postgres.

pub mod simulator;

//! vapi-reconciler: keeps Vapi assistants equal to the desired agents stored in Postgres.
pub mod api;
pub mod app;
pub mod config;
pub mod controller;
pub mod credentials;
pub mod demo;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod resilience;
pub mod simulator;
pub mod store;
pub mod telemetry;
pub mod vapi;

// Per-organization Vapi keys, encrypted at rest.
pub mod vault;

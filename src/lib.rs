//! vapi-reconciler: keeps Vapi assistants equal to the desired agents stored in Postgres.
//!
//! ```text
//!  store (Postgres) ──agents, status, intents──▶ controller ──▶ reconcile (PURE: plan, guard,
//!        ▲   NOTIFY ──────────────wake──────────────▲   │           voice rules, validation,
//!        │                                          │   │           three-way drift)
//!        └──── status, journal (fenced by leader) ──┘   ▼
//!                                          lanes per key (resilience: PURE breaker, buckets,
//!                                          back-off) ──▶ vapi client ──▶ Vapi (or simulator)
//!  http: /healthz /readyz /metrics + api: /v1 + console: /ui ── read the controller's state
//! ```
//! `app` is the only module that names concrete types and wires them. `reconcile` imports no
//! I/O crate; `resilience` is pure but for its `Limiter` and `Clock`, which read tokio's clock.
pub mod api;
pub mod app;
pub mod config;
// The operator console under /ui.
mod console;
pub mod controller;
pub mod credentials;
pub mod demo;
pub mod http;
pub mod leader;
pub mod metrics;
// A private, throwaway PostgreSQL server for the demo.
mod pgtemp;
pub mod reconcile;
pub mod resilience;
pub mod settings;
pub mod sharding;
pub mod simulator;
pub mod store;
pub mod telemetry;
pub mod vapi;

// Per-organization Vapi keys, encrypted at rest.
pub mod vault;

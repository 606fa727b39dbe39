//! The Vapi API simulator (placeholder; implemented on the `sim` branch).

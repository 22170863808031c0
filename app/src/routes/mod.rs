//! The HTTP routes, one file per area.

pub mod health;
pub mod rooms;
pub mod ws;

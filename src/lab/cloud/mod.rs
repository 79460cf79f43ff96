//! Cloud API emulations served by the lab daemon on the cloud port:
//! Hetzner Cloud under `/v1`, DigitalOcean under `/v2`. They create and
//! delete servers (droplets) as lab nodes through [`LabState`].

use crate::lab::LabState;
use std::sync::Arc;

/// The routes of all cloud emulations.
pub fn routes(_state: Arc<LabState>) -> axum::Router {
    axum::Router::new()
}

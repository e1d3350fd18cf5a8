//! What every handler and middleware gets: the domain core and the configuration.

use std::sync::Arc;

use crate::config::Config;
use crate::domain::core::Core;

#[derive(Clone)]
pub struct AppState {
    pub core: Arc<Core>,
    pub config: Arc<Config>,
}

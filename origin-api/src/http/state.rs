//! What every handler and middleware gets: the domain core, the configuration, the
//! gateway and the rendered pages.

use std::sync::Arc;

use crate::config::Config;
use crate::domain::core::Core;
use crate::gateway::Gateway;
use crate::http::pages::Pages;

#[derive(Clone)]
pub struct AppState {
    pub core: Arc<Core>,
    pub config: Arc<Config>,
    pub gateway: Arc<Gateway>,
    pub pages: Arc<Pages>,
}

//! Routing scripts: a Rhai script that decides, after each agent, where its output goes,
//! overriding the output's own `next_agent`.
//!
//! [`RhaiRoutingPolicy`] lives beside the [`RoutingPolicy`](bilayer_actors::RoutingPolicy)
//! trait it implements, in `bilayer-actors` (`system/routing.rs`, whose module docs describe
//! the script forms); this module keeps its path in the facade, `bilayer::routing`.

pub use bilayer_actors::RhaiRoutingPolicy;

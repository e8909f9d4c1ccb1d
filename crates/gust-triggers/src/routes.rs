//! Gust's HTTP routes: a persistent route table mapping `METHOD /path` keys to functions.

use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use gust_control::Control;
use gust_model::events::StoredRoute;
use gust_model::names::NameShape;
use gust_model::{ErrorCode, FunctionRef, LambdaError};
use gust_store::{StoreError, TriggerStore};

use crate::route_table::{Route, RouteKey, RouteTable};

/// A request's route: the route key, the function it invokes and the path parameters.
#[derive(Debug, Clone)]
pub struct RouteMatch {
    pub route_key: String,
    pub function: FunctionRef,
    pub path_parameters: Option<std::collections::BTreeMap<String, String>>,
}

pub struct Routes {
    control: Arc<Control>,
    store: Arc<Mutex<TriggerStore>>,
    table: RwLock<RouteTable>,
    stored: RwLock<Vec<StoredRoute>>,
    writes: tokio::sync::Mutex<()>,
}

fn internal(e: impl std::fmt::Display) -> LambdaError {
    tracing::error!(error = %e, "route storage failure");
    LambdaError::service(format!("Gust could not complete the request: {e}"))
}

impl Routes {
    pub fn open(
        control: Arc<Control>,
        store: Arc<Mutex<TriggerStore>>,
    ) -> Result<Arc<Self>, StoreError> {
        let stored = store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .load_routes()?;
        let mut table = RouteTable::default();
        for route in &stored {
            let added = RouteKey::parse(&route.route_key).and_then(|key| {
                table.add(Route {
                    key,
                    target: route.target.clone(),
                })
            });
            if let Err(e) = added {
                tracing::warn!(route = %route.route_key, error = %e, "stored route skipped");
            }
        }
        Ok(Arc::new(Self {
            control,
            store,
            table: RwLock::new(table),
            stored: RwLock::new(stored),
            writes: tokio::sync::Mutex::new(()),
        }))
    }

    pub fn list(&self) -> Vec<StoredRoute> {
        self.stored
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Adds a route to an existing function (or alias); refuses keys that conflict.
    pub async fn add(&self, route_key: &str, target: &str) -> Result<StoredRoute, LambdaError> {
        let key = RouteKey::parse(route_key).map_err(LambdaError::invalid_parameter)?;
        let function = FunctionRef::parse(target, NameShape::Namespaced)?;
        self.control.resolve(&function)?;
        let _write = self.writes.lock().await;
        let mut table = self.table.read().unwrap_or_else(|p| p.into_inner()).clone();
        table
            .add(Route {
                key,
                target: target.to_string(),
            })
            .map_err(|e| LambdaError::new(ErrorCode::ResourceConflict, e))?;
        let route = StoredRoute {
            route_key: route_key.to_string(),
            target: target.to_string(),
            created_ms: gust_model::timefmt::epoch_ms(SystemTime::now()),
        };
        let (store, stored) = (self.store.clone(), route.clone());
        tokio::task::spawn_blocking(move || {
            store
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .put_route(&stored)
        })
        .await
        .map_err(internal)?
        .map_err(internal)?;
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = table;
        let mut stored = self.stored.write().unwrap_or_else(|p| p.into_inner());
        stored.push(route.clone());
        stored.sort_by(|a, b| a.route_key.cmp(&b.route_key));
        tracing::info!(route = route_key, target, "route added");
        Ok(route)
    }

    pub async fn remove(&self, route_key: &str) -> Result<(), LambdaError> {
        let _write = self.writes.lock().await;
        let exists = self
            .stored
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|r| r.route_key == route_key);
        if !exists {
            return Err(LambdaError::not_found(format!(
                "Route not found: {route_key}"
            )));
        }
        let (store, key) = (self.store.clone(), route_key.to_string());
        tokio::task::spawn_blocking(move || {
            store
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .delete_route(&key)
        })
        .await
        .map_err(internal)?
        .map_err(internal)?;
        self.table
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(route_key);
        self.stored
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|r| r.route_key != route_key);
        tracing::info!(route = route_key, "route removed");
        Ok(())
    }

    /// The route serving `method path` (path still percent-encoded), if any.
    pub fn find(&self, method: &str, path: &str) -> Option<RouteMatch> {
        let table = self.table.read().unwrap_or_else(|p| p.into_inner());
        let matched = table.find(method, path)?;
        let function = FunctionRef::parse(&matched.route.target, NameShape::Namespaced).ok()?;
        let has_params = matched.route.key.as_str().contains('{');
        Some(RouteMatch {
            route_key: matched.route.key.as_str().to_string(),
            function,
            path_parameters: has_params.then_some(matched.path_parameters),
        })
    }
}

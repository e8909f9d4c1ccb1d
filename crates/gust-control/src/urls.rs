//! Function URL configurations (Create/Get/Update/Delete/ListFunctionUrlConfigs): which
//! function or alias a URL id invokes, with its auth type and CORS settings.

use std::sync::Arc;
use std::time::SystemTime;

use gust_model::timefmt::last_modified;
use gust_model::url::{AUTH_TYPES, INVOKE_MODES, new_url_id};
use gust_model::{Cors, FunctionRef, FunctionUrlConfig, LATEST, LambdaError};

use crate::requests::FunctionUrlConfigInput;
use crate::validate::Violations;
use crate::{Control, FunctionState, Page, paginate};

const URL_QUALIFIER_PATTERN: &str = r"((?!^\d+$)^[0-9a-zA-Z-_]+$)";

fn enum_member(v: &mut Violations, value: Option<&str>, field: &str, allowed: &[&str]) {
    if let Some(value) = value
        && !allowed.contains(&value)
    {
        v.push(
            value,
            field,
            &format!(
                "Member must satisfy enum value set: [{}]",
                allowed.join(", ")
            ),
        );
    }
}

fn check_list(
    v: &mut Violations,
    values: Option<&Vec<String>>,
    field: &str,
    max_items: usize,
    max_len: usize,
) {
    let Some(values) = values else {
        return;
    };
    if values.len() > max_items {
        v.push(
            &format!("{values:?}"),
            field,
            &format!("Member must have length less than or equal to {max_items}"),
        );
    }
    for value in values {
        if value.is_empty() || value.len() > max_len {
            v.push(
                &format!("{values:?}"),
                field,
                &format!(
                    "Member must satisfy constraint: [Member must have length less than or equal to {max_len}, Member must have length greater than or equal to 1]"
                ),
            );
            return;
        }
    }
}

fn check_cors(v: &mut Violations, cors: &Cors) {
    check_list(
        v,
        cors.allow_headers.as_ref(),
        "cors.allowHeaders",
        100,
        1024,
    );
    check_list(v, cors.allow_methods.as_ref(), "cors.allowMethods", 6, 6);
    check_list(
        v,
        cors.allow_origins.as_ref(),
        "cors.allowOrigins",
        100,
        253,
    );
    check_list(
        v,
        cors.expose_headers.as_ref(),
        "cors.exposeHeaders",
        100,
        1024,
    );
    if let Some(age) = cors.max_age {
        if age < 0 {
            v.push(
                &age.to_string(),
                "cors.maxAge",
                "Member must have value greater than or equal to 0",
            );
        } else if age > 86_400 {
            v.push(
                &age.to_string(),
                "cors.maxAge",
                "Member must have value less than or equal to 86400",
            );
        }
    }
}

fn check_input(input: &FunctionUrlConfigInput, require_auth: bool) -> Result<(), LambdaError> {
    let mut v = Violations::default();
    if require_auth && input.auth_type.is_none() {
        v.null("authType");
    }
    enum_member(&mut v, input.auth_type.as_deref(), "authType", AUTH_TYPES);
    enum_member(
        &mut v,
        input.invoke_mode.as_deref(),
        "invokeMode",
        INVOKE_MODES,
    );
    if let Some(cors) = &input.cors {
        check_cors(&mut v, cors);
    }
    v.into_result()
}

/// What Lambda answers when the URL configuration's function or alias is missing: reads and
/// deletes speak of the resource, creates, updates and lists of the function.
#[derive(Clone, Copy)]
enum Missing {
    Resource,
    Function,
}

impl Missing {
    fn error(self) -> LambdaError {
        LambdaError::not_found(match self {
            Self::Resource => "The resource you requested does not exist.",
            Self::Function => "Function does not exist",
        })
    }
}

impl Control {
    /// The qualifier key of a URL configuration: `""` for the function, else an alias that
    /// must exist (versions and `$LATEST` were refused by `url_function`).
    fn url_target(
        &self,
        state: &FunctionState,
        r: &FunctionRef,
        missing: Missing,
    ) -> Result<String, LambdaError> {
        let Some(q) = r.qualifier.as_deref() else {
            return Ok(String::new());
        };
        if !state.aliases.contains_key(q) {
            return Err(missing.error());
        }
        Ok(q.to_string())
    }

    /// The function's state, or Lambda's answer for a URL configuration of a missing function.
    fn url_function(
        &self,
        r: &FunctionRef,
        missing: Missing,
    ) -> Result<FunctionState, LambdaError> {
        // The qualifier's pattern is checked by the front end, before the function is looked up.
        if let Some(q) = r.qualifier.as_deref()
            && (q == LATEST || q.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(LambdaError::validation(&[gust_model::error::violation(
                q,
                "qualifier",
                &format!("Member must satisfy regular expression pattern: {URL_QUALIFIER_PATTERN}"),
            )]));
        }
        r.check_scope(&self.settings.arns)?;
        self.read()
            .get(&r.name)
            .cloned()
            .ok_or_else(|| missing.error())
    }

    fn existing_url(
        &self,
        r: &FunctionRef,
        missing: Missing,
    ) -> Result<Arc<FunctionUrlConfig>, LambdaError> {
        let state = self.url_function(r, missing)?;
        let key = self.url_target(&state, r, missing)?;
        state
            .url_configs
            .get(&key)
            .cloned()
            .ok_or_else(|| Missing::Resource.error())
    }

    pub async fn create_url_config(
        &self,
        r: &FunctionRef,
        input: FunctionUrlConfigInput,
    ) -> Result<Arc<FunctionUrlConfig>, LambdaError> {
        check_input(&input, true)?;
        let _write = self.writes.lock().await;
        let state = self.url_function(r, Missing::Function)?;
        let key = self.url_target(&state, r, Missing::Function)?;
        if state.url_configs.contains_key(&key) {
            return Err(LambdaError::conflict(format!(
                "Failed to create function url config for [functionArn = {}]. Error message:  FunctionUrlConfig exists for this Lambda function",
                r.arn(&self.settings.arns)
            )));
        }
        let now = last_modified(SystemTime::now());
        let config = Arc::new(FunctionUrlConfig {
            function: r.name.clone(),
            qualifier: (!key.is_empty()).then(|| key.clone()),
            url_id: new_url_id(),
            auth_type: input.auth_type.unwrap_or_default(),
            cors: input.cors,
            invoke_mode: input.invoke_mode.unwrap_or_else(|| "BUFFERED".into()),
            creation_time: now.clone(),
            last_modified_time: now,
        });
        self.store_url(config.clone()).await?;
        tracing::info!(function = %r.name, url = %config.url_id, "function URL created");
        Ok(config)
    }

    pub fn get_url_config(&self, r: &FunctionRef) -> Result<Arc<FunctionUrlConfig>, LambdaError> {
        self.existing_url(r, Missing::Resource)
    }

    /// Changes the members the request names; the others keep their values.
    pub async fn update_url_config(
        &self,
        r: &FunctionRef,
        input: FunctionUrlConfigInput,
    ) -> Result<Arc<FunctionUrlConfig>, LambdaError> {
        check_input(&input, false)?;
        let _write = self.writes.lock().await;
        let mut config = (*self.existing_url(r, Missing::Function)?).clone();
        if let Some(auth) = input.auth_type {
            config.auth_type = auth;
        }
        if let Some(cors) = input.cors {
            config.cors = Some(cors);
        }
        if let Some(mode) = input.invoke_mode {
            config.invoke_mode = mode;
        }
        config.last_modified_time = last_modified(SystemTime::now());
        let config = Arc::new(config);
        self.store_url(config.clone()).await?;
        Ok(config)
    }

    async fn store_url(&self, config: Arc<FunctionUrlConfig>) -> Result<(), LambdaError> {
        let stored = config.clone();
        self.persist(move |m| m.put_url_config(&stored)).await?;
        if let Some(state) = self.write().get_mut(&config.function) {
            let key = config.qualifier.clone().unwrap_or_default();
            state.url_configs.insert(key, config);
        }
        Ok(())
    }

    pub async fn delete_url_config(&self, r: &FunctionRef) -> Result<(), LambdaError> {
        let _write = self.writes.lock().await;
        let config = self.existing_url(r, Missing::Resource)?;
        let (name, key) = (
            config.function.clone(),
            config.qualifier.clone().unwrap_or_default(),
        );
        let stored_key = key.clone();
        self.persist(move |m| m.delete_url_config(&name, &stored_key))
            .await?;
        if let Some(state) = self.write().get_mut(&config.function) {
            state.url_configs.remove(&key);
        }
        tracing::info!(function = %config.function, url = %config.url_id, "function URL deleted");
        Ok(())
    }

    pub fn list_url_configs(
        &self,
        r: &FunctionRef,
        marker: Option<&str>,
        max_items: usize,
    ) -> Result<Page<Arc<FunctionUrlConfig>>, LambdaError> {
        if r.qualifier.is_some() {
            return Err(LambdaError::invalid_parameter(
                "Function name cannot contain a qualifier for this operation.",
            ));
        }
        let state = self.url_function(r, Missing::Function)?;
        let all: Vec<Arc<FunctionUrlConfig>> = state.url_configs.values().cloned().collect();
        Ok(paginate(
            all,
            marker.map(str::to_string),
            max_items,
            |c| c.url_id.clone(),
            |c| c.url_id.clone(),
        ))
    }

    /// The URL configuration with this id, if any (the function URL endpoint's lookup).
    pub fn find_url(&self, url_id: &str) -> Option<Arc<FunctionUrlConfig>> {
        self.read()
            .values()
            .flat_map(|s| s.url_configs.values())
            .find(|c| c.url_id == url_id)
            .cloned()
    }
}

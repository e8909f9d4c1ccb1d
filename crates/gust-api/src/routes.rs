//! Lambda's REST operations by method and path, as the API model declares them.
//!
//! Every operation of the model is listed, implemented or not, so that a client calling one
//! Gust does not have yet gets a well-formed Lambda error naming it rather than a bare 404.

/// `(method, path pattern, operation)`; `*` matches one path segment.
const OPERATIONS: &[(&str, &str, &str)] = &[
    ("POST", "2014-11-13/functions/*/invoke-async", "InvokeAsync"),
    (
        "POST",
        "2015-03-31/event-source-mappings",
        "CreateEventSourceMapping",
    ),
    (
        "GET",
        "2015-03-31/event-source-mappings",
        "ListEventSourceMappings",
    ),
    (
        "DELETE",
        "2015-03-31/event-source-mappings/*",
        "DeleteEventSourceMapping",
    ),
    (
        "GET",
        "2015-03-31/event-source-mappings/*",
        "GetEventSourceMapping",
    ),
    (
        "PUT",
        "2015-03-31/event-source-mappings/*",
        "UpdateEventSourceMapping",
    ),
    ("POST", "2015-03-31/functions", "CreateFunction"),
    ("GET", "2015-03-31/functions", "ListFunctions"),
    ("DELETE", "2015-03-31/functions/*", "DeleteFunction"),
    ("GET", "2015-03-31/functions/*", "GetFunction"),
    ("POST", "2015-03-31/functions/*/aliases", "CreateAlias"),
    ("GET", "2015-03-31/functions/*/aliases", "ListAliases"),
    ("DELETE", "2015-03-31/functions/*/aliases/*", "DeleteAlias"),
    ("GET", "2015-03-31/functions/*/aliases/*", "GetAlias"),
    ("PUT", "2015-03-31/functions/*/aliases/*", "UpdateAlias"),
    ("PUT", "2015-03-31/functions/*/code", "UpdateFunctionCode"),
    (
        "GET",
        "2015-03-31/functions/*/configuration",
        "GetFunctionConfiguration",
    ),
    (
        "PUT",
        "2015-03-31/functions/*/configuration",
        "UpdateFunctionConfiguration",
    ),
    ("POST", "2015-03-31/functions/*/invocations", "Invoke"),
    ("POST", "2015-03-31/functions/*/policy", "AddPermission"),
    ("GET", "2015-03-31/functions/*/policy", "GetPolicy"),
    (
        "DELETE",
        "2015-03-31/functions/*/policy/*",
        "RemovePermission",
    ),
    (
        "GET",
        "2015-03-31/functions/*/versions",
        "ListVersionsByFunction",
    ),
    ("POST", "2015-03-31/functions/*/versions", "PublishVersion"),
    ("GET", "2016-08-19/account-settings", "GetAccountSettings"),
    ("GET", "2017-03-31/tags/*", "ListTags"),
    ("POST", "2017-03-31/tags/*", "TagResource"),
    ("DELETE", "2017-03-31/tags/*", "UntagResource"),
    (
        "DELETE",
        "2017-10-31/functions/*/concurrency",
        "DeleteFunctionConcurrency",
    ),
    (
        "PUT",
        "2017-10-31/functions/*/concurrency",
        "PutFunctionConcurrency",
    ),
    ("GET", "2018-10-31/layers", "ListLayers"),
    ("GET", "2018-10-31/layers/*/versions", "ListLayerVersions"),
    (
        "POST",
        "2018-10-31/layers/*/versions",
        "PublishLayerVersion",
    ),
    (
        "DELETE",
        "2018-10-31/layers/*/versions/*",
        "DeleteLayerVersion",
    ),
    ("GET", "2018-10-31/layers/*/versions/*", "GetLayerVersion"),
    (
        "POST",
        "2018-10-31/layers/*/versions/*/policy",
        "AddLayerVersionPermission",
    ),
    (
        "GET",
        "2018-10-31/layers/*/versions/*/policy",
        "GetLayerVersionPolicy",
    ),
    (
        "DELETE",
        "2018-10-31/layers/*/versions/*/policy/*",
        "RemoveLayerVersionPermission",
    ),
    (
        "DELETE",
        "2019-09-25/functions/*/event-invoke-config",
        "DeleteFunctionEventInvokeConfig",
    ),
    (
        "GET",
        "2019-09-25/functions/*/event-invoke-config",
        "GetFunctionEventInvokeConfig",
    ),
    (
        "PUT",
        "2019-09-25/functions/*/event-invoke-config",
        "PutFunctionEventInvokeConfig",
    ),
    (
        "POST",
        "2019-09-25/functions/*/event-invoke-config",
        "UpdateFunctionEventInvokeConfig",
    ),
    (
        "GET",
        "2019-09-25/functions/*/event-invoke-config/list",
        "ListFunctionEventInvokeConfigs",
    ),
    (
        "GET",
        "2019-09-30/functions/*/concurrency",
        "GetFunctionConcurrency",
    ),
    (
        "DELETE",
        "2019-09-30/functions/*/provisioned-concurrency",
        "DeleteProvisionedConcurrencyConfig",
    ),
    (
        "GET",
        "2019-09-30/functions/*/provisioned-concurrency",
        "GetProvisionedConcurrencyConfig",
    ),
    (
        "PUT",
        "2019-09-30/functions/*/provisioned-concurrency",
        "PutProvisionedConcurrencyConfig",
    ),
    (
        "POST",
        "2020-04-22/code-signing-configs",
        "CreateCodeSigningConfig",
    ),
    (
        "GET",
        "2020-04-22/code-signing-configs",
        "ListCodeSigningConfigs",
    ),
    (
        "DELETE",
        "2020-04-22/code-signing-configs/*",
        "DeleteCodeSigningConfig",
    ),
    (
        "GET",
        "2020-04-22/code-signing-configs/*",
        "GetCodeSigningConfig",
    ),
    (
        "PUT",
        "2020-04-22/code-signing-configs/*",
        "UpdateCodeSigningConfig",
    ),
    (
        "GET",
        "2020-04-22/code-signing-configs/*/functions",
        "ListFunctionsByCodeSigningConfig",
    ),
    (
        "DELETE",
        "2020-06-30/functions/*/code-signing-config",
        "DeleteFunctionCodeSigningConfig",
    ),
    (
        "GET",
        "2020-06-30/functions/*/code-signing-config",
        "GetFunctionCodeSigningConfig",
    ),
    (
        "PUT",
        "2020-06-30/functions/*/code-signing-config",
        "PutFunctionCodeSigningConfig",
    ),
    (
        "GET",
        "2021-07-20/functions/*/runtime-management-config",
        "GetRuntimeManagementConfig",
    ),
    (
        "PUT",
        "2021-07-20/functions/*/runtime-management-config",
        "PutRuntimeManagementConfig",
    ),
    (
        "POST",
        "2021-10-31/functions/*/url",
        "CreateFunctionUrlConfig",
    ),
    (
        "DELETE",
        "2021-10-31/functions/*/url",
        "DeleteFunctionUrlConfig",
    ),
    ("GET", "2021-10-31/functions/*/url", "GetFunctionUrlConfig"),
    (
        "PUT",
        "2021-10-31/functions/*/url",
        "UpdateFunctionUrlConfig",
    ),
    (
        "GET",
        "2021-10-31/functions/*/urls",
        "ListFunctionUrlConfigs",
    ),
    (
        "POST",
        "2021-11-15/functions/*/response-streaming-invocations",
        "InvokeWithResponseStream",
    ),
    (
        "GET",
        "2024-08-31/functions/*/recursion-config",
        "GetFunctionRecursionConfig",
    ),
    (
        "PUT",
        "2024-08-31/functions/*/recursion-config",
        "PutFunctionRecursionConfig",
    ),
    (
        "POST",
        "2025-11-30/capacity-providers",
        "CreateCapacityProvider",
    ),
    (
        "GET",
        "2025-11-30/capacity-providers",
        "ListCapacityProviders",
    ),
    (
        "DELETE",
        "2025-11-30/capacity-providers/*",
        "DeleteCapacityProvider",
    ),
    (
        "GET",
        "2025-11-30/capacity-providers/*",
        "GetCapacityProvider",
    ),
    (
        "PUT",
        "2025-11-30/capacity-providers/*",
        "UpdateCapacityProvider",
    ),
    (
        "GET",
        "2025-11-30/capacity-providers/*/function-versions",
        "ListFunctionVersionsByCapacityProvider",
    ),
    (
        "GET",
        "2025-11-30/functions/*/function-scaling-config",
        "GetFunctionScalingConfig",
    ),
    (
        "PUT",
        "2025-11-30/functions/*/function-scaling-config",
        "PutFunctionScalingConfig",
    ),
    (
        "POST",
        "2025-12-01/durable-execution-callbacks/*/fail",
        "SendDurableExecutionCallbackFailure",
    ),
    (
        "POST",
        "2025-12-01/durable-execution-callbacks/*/heartbeat",
        "SendDurableExecutionCallbackHeartbeat",
    ),
    (
        "POST",
        "2025-12-01/durable-execution-callbacks/*/succeed",
        "SendDurableExecutionCallbackSuccess",
    ),
    (
        "GET",
        "2025-12-01/durable-executions/*",
        "GetDurableExecution",
    ),
    (
        "POST",
        "2025-12-01/durable-executions/*/checkpoint",
        "CheckpointDurableExecution",
    ),
    (
        "GET",
        "2025-12-01/durable-executions/*/history",
        "GetDurableExecutionHistory",
    ),
    (
        "GET",
        "2025-12-01/durable-executions/*/state",
        "GetDurableExecutionState",
    ),
    (
        "POST",
        "2025-12-01/durable-executions/*/stop",
        "StopDurableExecution",
    ),
    (
        "GET",
        "2025-12-01/functions/*/durable-executions",
        "ListDurableExecutionsByFunction",
    ),
];

/// A matched operation and its path parameters (percent-decoded), in order.
#[derive(Debug, PartialEq, Eq)]
pub struct Matched {
    pub operation: &'static str,
    pub params: Vec<String>,
}

/// Finds the operation for a method and decoded path segments. The two operations that share a
/// path with another and differ by query (`?List=ALL`, `?find=LayerVersion`) are told apart by
/// `query_has`.
pub fn find(
    method: &str,
    segments: &[String],
    query_has: impl Fn(&str) -> bool,
) -> Option<Matched> {
    for (m, pattern, operation) in OPERATIONS {
        if *m != method {
            continue;
        }
        let parts: Vec<&str> = pattern.split('/').collect();
        if parts.len() != segments.len() {
            continue;
        }
        let mut params = Vec::new();
        let matched = parts.iter().zip(segments).all(|(p, s)| {
            if *p == "*" {
                params.push(s.clone());
                !s.is_empty()
            } else {
                p == s
            }
        });
        if !matched {
            continue;
        }
        let operation = match *operation {
            "GetProvisionedConcurrencyConfig" if query_has("List") => {
                "ListProvisionedConcurrencyConfigs"
            }
            "ListLayers" if query_has("find") => "GetLayerVersionByArn",
            other => other,
        };
        return Some(Matched { operation, params });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(path: &str) -> Vec<String> {
        path.split('/').map(str::to_string).collect()
    }

    #[test]
    fn matches_operations_and_captures_parameters() {
        let m = find(
            "POST",
            &segs(
                "2015-03-31/functions/arn:aws:lambda:us-east-1:123456789012:function:f/invocations",
            ),
            |_| false,
        )
        .unwrap();
        assert_eq!(m.operation, "Invoke");
        assert_eq!(
            m.params,
            vec!["arn:aws:lambda:us-east-1:123456789012:function:f"]
        );
        assert_eq!(
            find("GET", &segs("2019-09-30/functions/f/concurrency"), |_| {
                false
            })
            .unwrap()
            .operation,
            "GetFunctionConcurrency"
        );
        assert_eq!(
            find(
                "GET",
                &segs("2019-09-30/functions/f/provisioned-concurrency"),
                |k| k == "List"
            )
            .unwrap()
            .operation,
            "ListProvisionedConcurrencyConfigs"
        );
        assert!(find("PATCH", &segs("2015-03-31/functions"), |_| false).is_none());
        assert!(
            find("GET", &segs("2015-03-31/functions//configuration"), |_| {
                false
            })
            .is_none()
        );
    }
}

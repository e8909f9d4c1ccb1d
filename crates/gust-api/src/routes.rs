//! Lambda's REST operations by method and path, as the API model declares them.
//!
//! Every operation of the model is listed, implemented or not, so that a client calling one
//! Gust does not have yet gets a well-formed Lambda error naming it rather than a bare 404.

gust_model::closed_set! {
    /// Lambda's operations, as the API model names them.
    pub enum Operation {
        InvokeAsync,
        CreateEventSourceMapping,
        ListEventSourceMappings,
        DeleteEventSourceMapping,
        GetEventSourceMapping,
        UpdateEventSourceMapping,
        CreateFunction,
        ListFunctions,
        DeleteFunction,
        GetFunction,
        CreateAlias,
        ListAliases,
        DeleteAlias,
        GetAlias,
        UpdateAlias,
        UpdateFunctionCode,
        GetFunctionConfiguration,
        UpdateFunctionConfiguration,
        Invoke,
        AddPermission,
        GetPolicy,
        RemovePermission,
        ListVersionsByFunction,
        PublishVersion,
        GetAccountSettings,
        ListTags,
        TagResource,
        UntagResource,
        DeleteFunctionConcurrency,
        PutFunctionConcurrency,
        ListLayers,
        ListLayerVersions,
        PublishLayerVersion,
        DeleteLayerVersion,
        GetLayerVersion,
        AddLayerVersionPermission,
        GetLayerVersionPolicy,
        RemoveLayerVersionPermission,
        DeleteFunctionEventInvokeConfig,
        GetFunctionEventInvokeConfig,
        PutFunctionEventInvokeConfig,
        UpdateFunctionEventInvokeConfig,
        ListFunctionEventInvokeConfigs,
        GetFunctionConcurrency,
        DeleteProvisionedConcurrencyConfig,
        GetProvisionedConcurrencyConfig,
        PutProvisionedConcurrencyConfig,
        CreateCodeSigningConfig,
        ListCodeSigningConfigs,
        DeleteCodeSigningConfig,
        GetCodeSigningConfig,
        UpdateCodeSigningConfig,
        ListFunctionsByCodeSigningConfig,
        DeleteFunctionCodeSigningConfig,
        GetFunctionCodeSigningConfig,
        PutFunctionCodeSigningConfig,
        GetRuntimeManagementConfig,
        PutRuntimeManagementConfig,
        CreateFunctionUrlConfig,
        DeleteFunctionUrlConfig,
        GetFunctionUrlConfig,
        UpdateFunctionUrlConfig,
        ListFunctionUrlConfigs,
        InvokeWithResponseStream,
        GetFunctionRecursionConfig,
        PutFunctionRecursionConfig,
        CreateCapacityProvider,
        ListCapacityProviders,
        DeleteCapacityProvider,
        GetCapacityProvider,
        UpdateCapacityProvider,
        ListFunctionVersionsByCapacityProvider,
        GetFunctionScalingConfig,
        PutFunctionScalingConfig,
        SendDurableExecutionCallbackFailure,
        SendDurableExecutionCallbackHeartbeat,
        SendDurableExecutionCallbackSuccess,
        GetDurableExecution,
        CheckpointDurableExecution,
        GetDurableExecutionHistory,
        GetDurableExecutionState,
        StopDurableExecution,
        ListDurableExecutionsByFunction,
        ListProvisionedConcurrencyConfigs,
        GetLayerVersionByArn,
    }
}

/// `(method, path pattern, operation)`; `*` matches one path segment.
const OPERATIONS: &[(&str, &str, Operation)] = &[
    (
        "POST",
        "2014-11-13/functions/*/invoke-async",
        Operation::InvokeAsync,
    ),
    (
        "POST",
        "2015-03-31/event-source-mappings",
        Operation::CreateEventSourceMapping,
    ),
    (
        "GET",
        "2015-03-31/event-source-mappings",
        Operation::ListEventSourceMappings,
    ),
    (
        "DELETE",
        "2015-03-31/event-source-mappings/*",
        Operation::DeleteEventSourceMapping,
    ),
    (
        "GET",
        "2015-03-31/event-source-mappings/*",
        Operation::GetEventSourceMapping,
    ),
    (
        "PUT",
        "2015-03-31/event-source-mappings/*",
        Operation::UpdateEventSourceMapping,
    ),
    ("POST", "2015-03-31/functions", Operation::CreateFunction),
    ("GET", "2015-03-31/functions", Operation::ListFunctions),
    (
        "DELETE",
        "2015-03-31/functions/*",
        Operation::DeleteFunction,
    ),
    ("GET", "2015-03-31/functions/*", Operation::GetFunction),
    (
        "POST",
        "2015-03-31/functions/*/aliases",
        Operation::CreateAlias,
    ),
    (
        "GET",
        "2015-03-31/functions/*/aliases",
        Operation::ListAliases,
    ),
    (
        "DELETE",
        "2015-03-31/functions/*/aliases/*",
        Operation::DeleteAlias,
    ),
    (
        "GET",
        "2015-03-31/functions/*/aliases/*",
        Operation::GetAlias,
    ),
    (
        "PUT",
        "2015-03-31/functions/*/aliases/*",
        Operation::UpdateAlias,
    ),
    (
        "PUT",
        "2015-03-31/functions/*/code",
        Operation::UpdateFunctionCode,
    ),
    (
        "GET",
        "2015-03-31/functions/*/configuration",
        Operation::GetFunctionConfiguration,
    ),
    (
        "PUT",
        "2015-03-31/functions/*/configuration",
        Operation::UpdateFunctionConfiguration,
    ),
    (
        "POST",
        "2015-03-31/functions/*/invocations",
        Operation::Invoke,
    ),
    (
        "POST",
        "2015-03-31/functions/*/policy",
        Operation::AddPermission,
    ),
    ("GET", "2015-03-31/functions/*/policy", Operation::GetPolicy),
    (
        "DELETE",
        "2015-03-31/functions/*/policy/*",
        Operation::RemovePermission,
    ),
    (
        "GET",
        "2015-03-31/functions/*/versions",
        Operation::ListVersionsByFunction,
    ),
    (
        "POST",
        "2015-03-31/functions/*/versions",
        Operation::PublishVersion,
    ),
    (
        "GET",
        "2016-08-19/account-settings",
        Operation::GetAccountSettings,
    ),
    ("GET", "2017-03-31/tags/*", Operation::ListTags),
    ("POST", "2017-03-31/tags/*", Operation::TagResource),
    ("DELETE", "2017-03-31/tags/*", Operation::UntagResource),
    (
        "DELETE",
        "2017-10-31/functions/*/concurrency",
        Operation::DeleteFunctionConcurrency,
    ),
    (
        "PUT",
        "2017-10-31/functions/*/concurrency",
        Operation::PutFunctionConcurrency,
    ),
    ("GET", "2018-10-31/layers", Operation::ListLayers),
    (
        "GET",
        "2018-10-31/layers/*/versions",
        Operation::ListLayerVersions,
    ),
    (
        "POST",
        "2018-10-31/layers/*/versions",
        Operation::PublishLayerVersion,
    ),
    (
        "DELETE",
        "2018-10-31/layers/*/versions/*",
        Operation::DeleteLayerVersion,
    ),
    (
        "GET",
        "2018-10-31/layers/*/versions/*",
        Operation::GetLayerVersion,
    ),
    (
        "POST",
        "2018-10-31/layers/*/versions/*/policy",
        Operation::AddLayerVersionPermission,
    ),
    (
        "GET",
        "2018-10-31/layers/*/versions/*/policy",
        Operation::GetLayerVersionPolicy,
    ),
    (
        "DELETE",
        "2018-10-31/layers/*/versions/*/policy/*",
        Operation::RemoveLayerVersionPermission,
    ),
    (
        "DELETE",
        "2019-09-25/functions/*/event-invoke-config",
        Operation::DeleteFunctionEventInvokeConfig,
    ),
    (
        "GET",
        "2019-09-25/functions/*/event-invoke-config",
        Operation::GetFunctionEventInvokeConfig,
    ),
    (
        "PUT",
        "2019-09-25/functions/*/event-invoke-config",
        Operation::PutFunctionEventInvokeConfig,
    ),
    (
        "POST",
        "2019-09-25/functions/*/event-invoke-config",
        Operation::UpdateFunctionEventInvokeConfig,
    ),
    (
        "GET",
        "2019-09-25/functions/*/event-invoke-config/list",
        Operation::ListFunctionEventInvokeConfigs,
    ),
    (
        "GET",
        "2019-09-30/functions/*/concurrency",
        Operation::GetFunctionConcurrency,
    ),
    (
        "DELETE",
        "2019-09-30/functions/*/provisioned-concurrency",
        Operation::DeleteProvisionedConcurrencyConfig,
    ),
    (
        "GET",
        "2019-09-30/functions/*/provisioned-concurrency",
        Operation::GetProvisionedConcurrencyConfig,
    ),
    (
        "PUT",
        "2019-09-30/functions/*/provisioned-concurrency",
        Operation::PutProvisionedConcurrencyConfig,
    ),
    (
        "POST",
        "2020-04-22/code-signing-configs",
        Operation::CreateCodeSigningConfig,
    ),
    (
        "GET",
        "2020-04-22/code-signing-configs",
        Operation::ListCodeSigningConfigs,
    ),
    (
        "DELETE",
        "2020-04-22/code-signing-configs/*",
        Operation::DeleteCodeSigningConfig,
    ),
    (
        "GET",
        "2020-04-22/code-signing-configs/*",
        Operation::GetCodeSigningConfig,
    ),
    (
        "PUT",
        "2020-04-22/code-signing-configs/*",
        Operation::UpdateCodeSigningConfig,
    ),
    (
        "GET",
        "2020-04-22/code-signing-configs/*/functions",
        Operation::ListFunctionsByCodeSigningConfig,
    ),
    (
        "DELETE",
        "2020-06-30/functions/*/code-signing-config",
        Operation::DeleteFunctionCodeSigningConfig,
    ),
    (
        "GET",
        "2020-06-30/functions/*/code-signing-config",
        Operation::GetFunctionCodeSigningConfig,
    ),
    (
        "PUT",
        "2020-06-30/functions/*/code-signing-config",
        Operation::PutFunctionCodeSigningConfig,
    ),
    (
        "GET",
        "2021-07-20/functions/*/runtime-management-config",
        Operation::GetRuntimeManagementConfig,
    ),
    (
        "PUT",
        "2021-07-20/functions/*/runtime-management-config",
        Operation::PutRuntimeManagementConfig,
    ),
    (
        "POST",
        "2021-10-31/functions/*/url",
        Operation::CreateFunctionUrlConfig,
    ),
    (
        "DELETE",
        "2021-10-31/functions/*/url",
        Operation::DeleteFunctionUrlConfig,
    ),
    (
        "GET",
        "2021-10-31/functions/*/url",
        Operation::GetFunctionUrlConfig,
    ),
    (
        "PUT",
        "2021-10-31/functions/*/url",
        Operation::UpdateFunctionUrlConfig,
    ),
    (
        "GET",
        "2021-10-31/functions/*/urls",
        Operation::ListFunctionUrlConfigs,
    ),
    (
        "POST",
        "2021-11-15/functions/*/response-streaming-invocations",
        Operation::InvokeWithResponseStream,
    ),
    (
        "GET",
        "2024-08-31/functions/*/recursion-config",
        Operation::GetFunctionRecursionConfig,
    ),
    (
        "PUT",
        "2024-08-31/functions/*/recursion-config",
        Operation::PutFunctionRecursionConfig,
    ),
    (
        "POST",
        "2025-11-30/capacity-providers",
        Operation::CreateCapacityProvider,
    ),
    (
        "GET",
        "2025-11-30/capacity-providers",
        Operation::ListCapacityProviders,
    ),
    (
        "DELETE",
        "2025-11-30/capacity-providers/*",
        Operation::DeleteCapacityProvider,
    ),
    (
        "GET",
        "2025-11-30/capacity-providers/*",
        Operation::GetCapacityProvider,
    ),
    (
        "PUT",
        "2025-11-30/capacity-providers/*",
        Operation::UpdateCapacityProvider,
    ),
    (
        "GET",
        "2025-11-30/capacity-providers/*/function-versions",
        Operation::ListFunctionVersionsByCapacityProvider,
    ),
    (
        "GET",
        "2025-11-30/functions/*/function-scaling-config",
        Operation::GetFunctionScalingConfig,
    ),
    (
        "PUT",
        "2025-11-30/functions/*/function-scaling-config",
        Operation::PutFunctionScalingConfig,
    ),
    (
        "POST",
        "2025-12-01/durable-execution-callbacks/*/fail",
        Operation::SendDurableExecutionCallbackFailure,
    ),
    (
        "POST",
        "2025-12-01/durable-execution-callbacks/*/heartbeat",
        Operation::SendDurableExecutionCallbackHeartbeat,
    ),
    (
        "POST",
        "2025-12-01/durable-execution-callbacks/*/succeed",
        Operation::SendDurableExecutionCallbackSuccess,
    ),
    (
        "GET",
        "2025-12-01/durable-executions/*",
        Operation::GetDurableExecution,
    ),
    (
        "POST",
        "2025-12-01/durable-executions/*/checkpoint",
        Operation::CheckpointDurableExecution,
    ),
    (
        "GET",
        "2025-12-01/durable-executions/*/history",
        Operation::GetDurableExecutionHistory,
    ),
    (
        "GET",
        "2025-12-01/durable-executions/*/state",
        Operation::GetDurableExecutionState,
    ),
    (
        "POST",
        "2025-12-01/durable-executions/*/stop",
        Operation::StopDurableExecution,
    ),
    (
        "GET",
        "2025-12-01/functions/*/durable-executions",
        Operation::ListDurableExecutionsByFunction,
    ),
];

/// A matched operation and its path parameters (percent-decoded), in order.
#[derive(Debug, PartialEq, Eq)]
pub struct Matched {
    pub operation: Operation,
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
            Operation::GetProvisionedConcurrencyConfig if query_has("List") => {
                Operation::ListProvisionedConcurrencyConfigs
            }
            Operation::ListLayers if query_has("find") => Operation::GetLayerVersionByArn,
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
        assert_eq!(m.operation, Operation::Invoke);
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
            Operation::GetFunctionConcurrency
        );
        assert_eq!(
            find(
                "GET",
                &segs("2019-09-30/functions/f/provisioned-concurrency"),
                |k| k == "List"
            )
            .unwrap()
            .operation,
            Operation::ListProvisionedConcurrencyConfigs
        );
        assert!(find("PATCH", &segs("2015-03-31/functions"), |_| false).is_none());
        assert!(
            find("GET", &segs("2015-03-31/functions//configuration"), |_| {
                false
            })
            .is_none()
        );
    }

    #[test]
    fn every_operation_is_reachable_by_exactly_one_route() {
        for operation in Operation::ALL {
            let routes = OPERATIONS.iter().filter(|(_, _, o)| o == operation).count();
            let by_query = matches!(
                operation,
                Operation::ListProvisionedConcurrencyConfigs | Operation::GetLayerVersionByArn
            );
            assert_eq!(routes, usize::from(!by_query), "{operation}");
        }
    }
}

//! The confinement a fork of a SnapStart snapshot process applies to itself, generated from
//! the sandbox's own definition (its template and [`spawn::RESTRICTIONS`]), with the kernel's
//! numbers the fork needs to apply it: the runtime's side types in none of them.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::spawn::{self, Template};
use crate::{Capabilities, Confinement};

/// What a runtime's capabilities end as once it is exec'd under a uid other than its user
/// namespace's root: no effective, permitted, inheritable or ambient capabilities. Its
/// bounding set stays the full one unshare(CLONE_NEWUSER) gives (no_new_privs makes it
/// moot), so a fork drops nothing from it either: the two must not be told apart.
fn capabilities() -> Capabilities {
    Capabilities {
        kept: 0,
        clear_ambient: true,
        drop_bounding: Vec::new(),
    }
}

/// The name of a resource limit the template sets, for readers of the document.
fn rlimit_name(resource: libc::__rlimit_resource_t) -> &'static str {
    match resource {
        libc::RLIMIT_NOFILE => "RLIMIT_NOFILE",
        libc::RLIMIT_NPROC => "RLIMIT_NPROC",
        libc::RLIMIT_CORE => "RLIMIT_CORE",
        libc::RLIMIT_STACK => "RLIMIT_STACK",
        _ => "",
    }
}

/// The confinement of a sandbox made from `template`, as a fork applies it.
pub(super) fn of(template: &Template, uid: u32, gid: u32, landlock_handled: u64) -> Confinement {
    let landlock_rules = if landlock_handled == 0 {
        Vec::new()
    } else {
        template
            .landlock
            .iter()
            .map(|rule| {
                let path = Path::new(OsStr::from_bytes(rule.path.as_bytes()));
                (path.to_path_buf(), rule.access & landlock_handled)
            })
            .collect()
    };
    Confinement {
        uid,
        gid,
        order: spawn::RESTRICTIONS.iter().map(|r| r.name()).collect(),
        capabilities: capabilities(),
        landlock_handled,
        landlock_rules,
        rlimits: template
            .rlimits
            .iter()
            .map(|(resource, value)| (rlimit_name(*resource), *resource, *value))
            .collect(),
        seccomp: template
            .seccomp
            .iter()
            .map(|program| program.iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect())
            .collect(),
        seccomp_flags: spawn::SECCOMP_FLAGS,
    }
}

/// The kernel's numbers for applying a confinement on this machine's architecture.
pub fn kernel() -> serde_json::Value {
    serde_json::json!({
        "SYS_landlock_create_ruleset": libc::SYS_landlock_create_ruleset,
        "SYS_landlock_add_rule": libc::SYS_landlock_add_rule,
        "SYS_landlock_restrict_self": libc::SYS_landlock_restrict_self,
        "SYS_seccomp": libc::SYS_seccomp,
        "SECCOMP_SET_MODE_FILTER": libc::SECCOMP_SET_MODE_FILTER,
        "PR_SET_NO_NEW_PRIVS": libc::PR_SET_NO_NEW_PRIVS,
        "PR_CAPBSET_DROP": libc::PR_CAPBSET_DROP,
        "PR_CAP_AMBIENT": libc::PR_CAP_AMBIENT,
        "PR_CAP_AMBIENT_CLEAR_ALL": libc::PR_CAP_AMBIENT_CLEAR_ALL,
        "_LINUX_CAPABILITY_VERSION_3": linux_raw_sys::general::_LINUX_CAPABILITY_VERSION_3,
        "_LINUX_CAPABILITY_U32S_3": linux_raw_sys::general::_LINUX_CAPABILITY_U32S_3,
        "LANDLOCK_RULE_PATH_BENEATH": spawn::LANDLOCK_RULE_PATH_BENEATH,
        // The part of struct landlock_ruleset_attr Gust fills (handled_access_fs).
        "LandlockRulesetAttrSize": std::mem::size_of::<spawn::RulesetAttr>(),
    })
}

//! PutAccountSetting, PutAccountSettingDefault, ListAccountSettings,
//! DeleteAccountSetting. Settings are per account and per principal (an IAM user or
//! role of the account, or its root user). The root user's settings are the
//! account's defaults; a principal's effective setting is its own, else the root
//! user's, else the default ECS gives new accounts (`aws_managed`). Callers act as
//! the root user of their account (there are no IAM identities here).

use super::common::{input, paginate};
use crate::cells::CellState;
use crate::ctx::Ctx;
use crate::error::ApiError;
use crate::model::settings::{setting, ACCOUNT_SETTINGS};
use crate::model::{root_principal, AccountSetting};
use serde::Deserialize;
use serde_json::{json, Value};

/// The principal a `principalArn` names (the caller, its root user, when absent):
/// an IAM user, role or root user of the caller's account.
fn principal(ctx: &Ctx<'_>, p: Option<&str>) -> Result<String, ApiError> {
    let Some(p) = p.filter(|p| !p.is_empty()) else {
        return Ok(root_principal(ctx.account));
    };
    let own = format!("arn:aws:iam::{}:", ctx.account);
    let ok = p.len() <= 1600
        && p.strip_prefix(own.as_str()).is_some_and(|r| {
            r == "root"
                || ["user/", "role/"].iter().any(|k| {
                    r.strip_prefix(k).is_some_and(|n| {
                        !n.is_empty()
                            && n.bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-/".contains(&b))
                    })
                })
        });
    if !ok {
        return Err(ApiError::invalid(
            "principalArn must be the ARN of an IAM user, role or the root user of your account.",
        ));
    }
    Ok(p.to_string())
}

/// Checks a setting's name and value.
fn check(name: &str, value: &str) -> Result<(), ApiError> {
    let short = |s: &str| s.chars().take(64).collect::<String>();
    let (values, _) = setting(name).ok_or_else(|| {
        ApiError::invalid(format!(
            "Invalid name '{}': not an account setting.",
            short(name)
        ))
    })?;
    if !values.contains(&value) {
        return Err(ApiError::invalid(format!(
            "Invalid value '{}' for {name}: one of {}.",
            short(value),
            values.join(", ")
        )));
    }
    Ok(())
}

/// The effective setting `name` of `principal`.
pub fn effective(
    c: &CellState,
    account: &str,
    name: &str,
    principal: &str,
) -> Result<Option<AccountSetting>, ApiError> {
    let Some((_, default)) = setting(name) else {
        return Ok(None);
    };
    let root = root_principal(account);
    if let Some(s) = c.account_settings().get(account, name, principal)? {
        return Ok(Some(s));
    }
    if let Some(s) = c.account_settings().get(account, name, &root)? {
        return Ok(Some(AccountSetting {
            principal_arn: principal.to_string(),
            ..s
        }));
    }
    Ok(Some(AccountSetting {
        name: name.to_string(),
        value: default.to_string(),
        principal_arn: principal.to_string(),
        kind: "aws_managed".into(),
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutInput {
    name: Option<String>,
    value: Option<String>,
    principal_arn: Option<String>,
}

fn put_for(ctx: &Ctx<'_>, c: &CellState, inp: PutInput, who: String) -> Result<Value, ApiError> {
    let name = inp
        .name
        .ok_or_else(|| ApiError::invalid("name can not be blank."))?;
    let value = inp
        .value
        .ok_or_else(|| ApiError::invalid("value can not be blank."))?;
    check(&name, &value)?;
    let s = AccountSetting {
        name,
        value,
        principal_arn: who,
        kind: "user".into(),
    };
    c.account_settings().put(ctx.account, &s)?;
    Ok(json!({ "setting": s }))
}

/// PutAccountSetting: the setting of one principal (the caller when not named).
pub fn put(ctx: &Ctx<'_>, c: &mut CellState, v: Value) -> Result<Value, ApiError> {
    let inp: PutInput = input(v)?;
    let who = principal(ctx, inp.principal_arn.as_deref())?;
    put_for(ctx, c, inp, who)
}

/// PutAccountSettingDefault: the setting of every principal that has none of its
/// own (stored as the root user's).
pub fn put_default(ctx: &Ctx<'_>, c: &mut CellState, v: Value) -> Result<Value, ApiError> {
    let inp: PutInput = input(v)?;
    put_for(ctx, c, inp, root_principal(ctx.account))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteInput {
    name: Option<String>,
    principal_arn: Option<String>,
}

/// DeleteAccountSetting: the principal's own setting goes (its effective value is
/// then the account's default); answers the setting deleted.
pub fn delete(ctx: &Ctx<'_>, c: &mut CellState, v: Value) -> Result<Value, ApiError> {
    let inp: DeleteInput = input(v)?;
    let name = inp
        .name
        .ok_or_else(|| ApiError::invalid("name can not be blank."))?;
    if setting(&name).is_none() {
        return Err(ApiError::invalid(format!(
            "Invalid name '{}': not an account setting.",
            name.chars().take(64).collect::<String>()
        )));
    }
    let who = principal(ctx, inp.principal_arn.as_deref())?;
    let s = c
        .account_settings()
        .get(ctx.account, &name, &who)?
        .ok_or_else(|| ApiError::invalid(format!("No account setting {name} is set for {who}.")))?;
    c.account_settings().delete(ctx.account, &name, &who)?;
    Ok(json!({ "setting": s }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListInput {
    name: Option<String>,
    value: Option<String>,
    principal_arn: Option<String>,
    #[serde(default)]
    effective_settings: bool,
    next_token: Option<String>,
    max_results: Option<i64>,
}

/// ListAccountSettings: the principal's own settings, or with `effectiveSettings`
/// the effective value of every setting; filtered by name and value.
pub fn list(ctx: &Ctx<'_>, c: &mut CellState, v: Value) -> Result<Value, ApiError> {
    let inp: ListInput = input(v)?;
    if let Some(n) = &inp.name {
        if setting(n).is_none() {
            return Err(ApiError::invalid(format!(
                "Invalid name '{}': not an account setting.",
                n.chars().take(64).collect::<String>()
            )));
        }
    }
    if inp.max_results.is_some_and(|m| !(1..=10).contains(&m)) {
        return Err(ApiError::invalid("maxResults must be between 1 and 10."));
    }
    let who = principal(ctx, inp.principal_arn.as_deref())?;
    let mut found = Vec::new();
    if inp.effective_settings {
        for (name, _, _) in ACCOUNT_SETTINGS {
            if let Some(s) = effective(c, ctx.account, name, &who)? {
                found.push(s);
            }
        }
    } else {
        found = c
            .account_settings()
            .of_account(ctx.account)?
            .into_iter()
            .map(|(_, s)| s)
            .filter(|s| s.principal_arn == who)
            .collect();
    }
    let items: Vec<(String, AccountSetting)> = found
        .into_iter()
        .filter(|s| inp.name.as_ref().is_none_or(|n| &s.name == n))
        .filter(|s| inp.value.as_ref().is_none_or(|v| &s.value == v))
        .map(|s| (s.name.clone(), s))
        .collect();
    let mut items = items;
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let (settings, next) = paginate(items, inp.next_token.as_deref(), inp.max_results, 10)?;
    Ok(json!({"settings": settings, "nextToken": next}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_are_of_the_callers_account() {
        let ctx = Ctx {
            account: "111122223333",
            region: "us-east-1",
        };
        assert_eq!(
            principal(&ctx, None).unwrap(),
            "arn:aws:iam::111122223333:root"
        );
        for ok in [
            "arn:aws:iam::111122223333:root",
            "arn:aws:iam::111122223333:user/alice",
            "arn:aws:iam::111122223333:role/path/deployer",
        ] {
            assert_eq!(principal(&ctx, Some(ok)).unwrap(), ok);
        }
        for bad in [
            "arn:aws:iam::444455556666:user/alice",
            "arn:aws:iam::111122223333:group/g",
            "arn:aws:iam::111122223333:user/",
            "alice",
        ] {
            assert!(principal(&ctx, Some(bad)).is_err(), "{bad}");
        }
        assert!(check("containerInsights", "enhanced").is_ok());
        assert!(check("taskLongArnFormat", "disabled").is_err());
        assert!(check("tagResourceAuthorization", "on").is_ok());
        assert!(check("nope", "on").is_err());
    }
}

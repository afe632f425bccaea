//! Account settings per account and principal, and cluster settings, with the real
//! AWS CLI: PutAccountSetting(Default), ListAccountSettings (own and effective),
//! DeleteAccountSetting, UpdateCluster, UpdateClusterSettings; the account's
//! containerInsights setting applies to new clusters; all of it kept across a restart.

use crate::common::*;
use serde_json::Value;

/// `name=value@principal` of each setting listed.
fn listed(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v["settings"]
        .as_array()
        .unwrap_or_else(|| panic!("no settings in {v}"))
        .iter()
        .map(|s| {
            format!(
                "{}={}@{}",
                s["name"].as_str().unwrap(),
                s["value"].as_str().unwrap(),
                s["principalArn"]
                    .as_str()
                    .unwrap()
                    .rsplit(':')
                    .next()
                    .unwrap()
            )
        })
        .collect();
    out.sort();
    out
}

fn insights(cluster: &Value) -> String {
    cluster["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "containerInsights")
        .map(|s| s["value"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

#[test]
fn account_and_cluster_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut cp = ControlPlane::start_in(&dir, &[]);
    let alice = format!("arn:aws:iam::{ACCOUNT}:user/alice");

    // Defaults first: nothing set, ECS's defaults effective.
    let v = cp.aws(&["list-account-settings"]).unwrap();
    assert_eq!(listed(&v), Vec::<String>::new());
    let v = cp
        .aws(&[
            "list-account-settings",
            "--effective-settings",
            "--name",
            "containerInsights",
        ])
        .unwrap();
    assert_eq!(listed(&v), ["containerInsights=disabled@root"]);
    // Debian's CLI (2.9) predates the `type` field: read it with the signing client.
    let raw = cp
        .call(
            "ListAccountSettings",
            serde_json::json!({"effectiveSettings": true, "name": "containerInsights"}),
        )
        .unwrap();
    assert_eq!(raw["settings"][0]["type"], "aws_managed", "{raw}");

    // The account's default, a user's own, another account untouched.
    let v = cp
        .aws(&[
            "put-account-setting-default",
            "--name",
            "containerInsights",
            "--value",
            "enabled",
        ])
        .unwrap();
    assert_eq!(
        v["setting"]["principalArn"],
        format!("arn:aws:iam::{ACCOUNT}:root")
    );
    cp.aws(&[
        "put-account-setting",
        "--name",
        "tagResourceAuthorization",
        "--value",
        "off",
        "--principal-arn",
        &alice,
    ])
    .unwrap();
    let v = cp
        .aws(&[
            "list-account-settings",
            "--effective-settings",
            "--principal-arn",
            &alice,
        ])
        .unwrap();
    let eff = listed(&v);
    assert!(
        eff.contains(&"containerInsights=enabled@user/alice".to_string()),
        "{eff:?}"
    );
    assert!(
        eff.contains(&"tagResourceAuthorization=off@user/alice".to_string()),
        "{eff:?}"
    );
    assert!(
        eff.contains(&"taskLongArnFormat=enabled@user/alice".to_string()),
        "{eff:?}"
    );
    let v = cp
        .aws(&["list-account-settings", "--principal-arn", &alice])
        .unwrap();
    assert_eq!(listed(&v), ["tagResourceAuthorization=off@user/alice"]);
    let other = cp
        .aws_as(
            KEY2,
            SECRET2,
            &[
                "list-account-settings",
                "--effective-settings",
                "--name",
                "containerInsights",
            ],
        )
        .unwrap();
    assert_eq!(listed(&other), ["containerInsights=disabled@root"]);

    // The account's containerInsights applies to a new cluster.
    let cl = cp.aws(&["create-cluster", "--cluster-name", "c1"]).unwrap();
    assert_eq!(insights(&cl["cluster"]), "enabled");
    let cl = cp
        .aws(&[
            "update-cluster-settings",
            "--cluster",
            "c1",
            "--settings",
            "name=containerInsights,value=enhanced",
        ])
        .unwrap();
    assert_eq!(insights(&cl["cluster"]), "enhanced");
    let cl = cp
        .aws(&[
            "update-cluster",
            "--cluster",
            "c1",
            "--settings",
            "name=containerInsights,value=disabled",
        ])
        .unwrap();
    assert_eq!(insights(&cl["cluster"]), "disabled");

    // Refusals.
    for args in [
        vec![
            "put-account-setting",
            "--name",
            "taskLongArnFormat",
            "--value",
            "disabled",
        ],
        vec![
            "put-account-setting",
            "--name",
            "containerInsights",
            "--value",
            "sometimes",
        ],
        vec![
            "put-account-setting",
            "--name",
            "containerInsights",
            "--value",
            "enabled",
            "--principal-arn",
            "arn:aws:iam::444455556666:user/mallory",
        ],
        vec!["delete-account-setting", "--name", "awsvpcTrunking"],
        vec![
            "update-cluster-settings",
            "--cluster",
            "c1",
            "--settings",
            "name=containerInsights,value=maybe",
        ],
    ] {
        let e = cp.aws(&args).unwrap_err();
        assert_eq!(error_type(&e), "InvalidParameterException", "{args:?}: {e}");
    }
    let e = cp
        .aws(&[
            "update-cluster-settings",
            "--cluster",
            "nope",
            "--settings",
            "name=containerInsights,value=enabled",
        ])
        .unwrap_err();
    assert_eq!(error_type(&e), "ClusterNotFoundException", "{e}");

    // Kept across a restart; then deleted, the user falls back to the default.
    cp.kill9();
    let cp = ControlPlane::start_in(&dir, &[]);
    let v = cp
        .aws(&["list-account-settings", "--principal-arn", &alice])
        .unwrap();
    assert_eq!(listed(&v), ["tagResourceAuthorization=off@user/alice"]);
    let d = cp
        .aws(&[
            "describe-clusters",
            "--clusters",
            "c1",
            "--include",
            "SETTINGS",
        ])
        .unwrap();
    assert_eq!(insights(&d["clusters"][0]), "disabled");
    let v = cp
        .aws(&[
            "delete-account-setting",
            "--name",
            "tagResourceAuthorization",
            "--principal-arn",
            &alice,
        ])
        .unwrap();
    assert_eq!(v["setting"]["value"], "off");
    let v = cp
        .aws(&[
            "list-account-settings",
            "--effective-settings",
            "--name",
            "tagResourceAuthorization",
            "--principal-arn",
            &alice,
        ])
        .unwrap();
    assert_eq!(listed(&v), ["tagResourceAuthorization=on@user/alice"]);
}

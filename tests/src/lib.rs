//! Integration tests that need a KVM host, and the nested KVM host harness.

# The driver's side of an end-to-end task run (bash, sourced after `source DIR/env` of
# `services` beside this file): the AWS CLI against that control plane, and the KVM host
# started with `host-daemons`. Sourced by ./quickstart and bench-run-task; run from the
# repository root. (scripts/lib.sh is the timed phases of ./quickstart and ./run-tests;
# tests/nested/lib.sh the settings of the nested KVM host scripts.)

# The real AWS CLI against the control plane of DIR/env (HTTPS, trusting its CA).
aws_() {
    AWS_ACCESS_KEY_ID=$KEY AWS_SECRET_ACCESS_KEY=$SECRET AWS_CONFIG_FILE=/dev/null \
        AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_PAGER= \
        /usr/bin/aws --endpoint-url "https://127.0.0.1:$CP_PORT" --ca-bundle "$CP_CA" \
        --region us-east-1 "$@"
}

# e2e_start_host WORK [VAR=VALUE...]: starts host-daemons on a KVM host in the background,
# with the payload WORK/payload and its output in WORK/host.out: here if /dev/kvm has
# hardware virtualization (scripts/kvm-kind, the rule the test harness uses too), else in
# a nested KVM host. Sets host_pid, outer (this machine's address as the KVM host sees it)
# and kvm_host (in words). The control plane's CA goes into the payload
# (controlplane-ca.pem), where host-daemons finds it.
e2e_start_host() {
    local work=$1
    shift
    cp "$CP_CA" "$work/payload/controlplane-ca.pem"
    local vars=(CP_PORT="$CP_PORT" TOKEN="$TOKEN" REGISTRY_PORT="$REGISTRY_PORT" "$@")
    if [ "$(scripts/kvm-kind)" = direct ]; then
        outer=127.0.0.1 kvm_host="direct KVM"
        env "${vars[@]}" PAYLOAD="$work/payload" OUTER_ADDR=127.0.0.1 E2E_DIR="$work/host" \
            STOP_FILE="$work/host/stop" PATH="$work/payload/bin:$PATH" \
            LD_LIBRARY_PATH="$work/payload/lib" sh tests/scenarios/task-e2e/host-daemons >"$work/host.out" 2>&1 &
    else
        outer=10.0.2.2 kvm_host="nested KVM host (QEMU TCG, emulated SVM): not representative of hardware"
        tests/nested/run "$work/payload" env "${vars[@]}" STOP_FILE=/run/e2e/stop \
            sh /payload/scenarios/task-e2e/host-daemons >"$work/host.out" 2>&1 &
    fi
    host_pid=$!
}

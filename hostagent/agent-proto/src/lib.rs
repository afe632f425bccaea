//! Messages between the host agent and the control plane's agent communication service.

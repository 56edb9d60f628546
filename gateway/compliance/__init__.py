"""The compliance room of the gateway: artifact registry, tenant profiles, the request-path
step, reports and the admin API (docs/compliance.md). The pure rules are in
policy/compliance_rules."""

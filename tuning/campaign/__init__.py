"""``python -m tuning.campaign``: the remediation campaign as code (steps, rules, facts)."""

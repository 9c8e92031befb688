"""Edge safety rules: rule packs (data, in edge_rules/), their models, the condition
vocabulary and a pure, clock-injected engine that turns samples into Evaluations."""

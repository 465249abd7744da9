"""The YAML rule engine: the rule model, its loader, expressions, schedules and the engine."""

"""Universe: reference data model, GICS names and the smart filter."""

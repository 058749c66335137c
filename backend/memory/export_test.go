package memory

// AddClamped exports addClamped to the external tests.
var AddClamped = addClamped

"""Small shared pieces with no vltr dependencies: errors, atomic writes, warnings."""

"""Circuit text: QASM 2/3 and QPY codecs, the include policy and size limits."""

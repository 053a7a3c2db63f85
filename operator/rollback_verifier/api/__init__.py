"""The public contract: the RollbackVerification models (which generate the CRD) and the operator settings
(which generate the chart's values schema). Imports nothing else of the package."""

"""rollback-verifier: proves that a GitOps rollback really happened."""

__version__ = "0.1.0"

GROUP = "gitops.proompteng.ai"
VERSION = "v1alpha1"
KIND = "RollbackVerification"
PLURAL = "rollbackverifications"
LABEL_PREFIX = f"{GROUP}/"

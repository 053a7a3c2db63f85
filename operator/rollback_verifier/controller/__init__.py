"""The operator's thin shell: kopf handlers, the runner and detector that translate events, informers,
the Kubernetes client, metrics and worker pools. Imports the layers below it, never the CLI."""

"""Where the reverted values come from (git, Argo CD history) and how they become expected images.
I/O through tools passed in or found on PATH; imports the core and the api, never the controller."""

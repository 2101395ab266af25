"""The notebook side: Client and task handles (HTTP to the server), the %qtask magics, the
live task table widget and result display. Talks to the server only over HTTP."""

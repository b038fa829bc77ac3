// Package deploy holds no code: its tests check the deployment files in this
// directory (the systemd units in systemd/, the container image and compose
// file in container/ and compose/) against the tidemark binary and against
// systemd's own tools.
package deploy

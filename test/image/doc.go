// Package image checks what of the Dockerfile can be checked without a
// container engine (none runs on the development and CI machines): the
// build stage's own COPY and RUN lines, run in a copy of exactly the files
// they copy, must produce a static binary that runs as the final stage's
// user.
package image

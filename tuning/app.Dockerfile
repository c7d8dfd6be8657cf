# Your own service on percore, as an image: the same two stages as
# tuning/Dockerfile, for any binary that calls `percore::main(app)`.
#
# In your crate (which depends on percore), with this file as Dockerfile:
#   docker build --build-arg APP=notes -t notes .
# The notes example of this repository, from its root:
#   docker build -f tuning/app.Dockerfile --build-arg APP=notes --build-arg KIND=example -t notes .
#
#   docker run --rm -p 8080:8080 --cpuset-cpus 2-3 \
#     --ulimit memlock=67108864 --ulimit nofile=1048576 \
#     --security-opt seccomp=unconfined \
#     -e NOTES_TOKEN=... \                 # the app's own settings: PREFIX_* variables
#     notes
#
# Keep target/ and .git out of the build context with a .dockerignore
# beside this file (this repository's is at its root):
#   target/
#   .git/
#
# Secrets (tokens, cookies.key) come from the environment (-e, an env file,
# a Kubernetes Secret), never from the image. `docker run ... notes
# check-config /etc/app/app.toml` validates the file, [app] table included,
# and `... notes doctor` checks the host, as for the percore binary.

FROM rust:1-bookworm AS build
ARG APP
# bin for a [[bin]] of your crate; example for one of examples/.
ARG KIND=bin
WORKDIR /src
COPY . .
RUN test -n "$APP" || { echo "set --build-arg APP=<your binary>"; exit 1; } \
 && cargo build --release --locked --"$KIND" "$APP" \
 && if [ "$KIND" = example ]; then dir=target/release/examples; else dir=target/release; fi \
 && cp "$dir/$APP" /app

FROM debian:bookworm-slim
RUN useradd --system --no-create-home --uid 10001 app
COPY --from=build /app /usr/local/bin/app
# The same file holds percore's keys and the app's [app] table; mount
# your own over it (-v ./app.toml:/etc/app/app.toml:ro).
COPY tuning/percore.toml /etc/app/app.toml
ENV PERCORE_CONFIG=/etc/app/app.toml \
    PERCORE_LISTEN=0.0.0.0:8080
USER app
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /health HTTP/1.1\\r\\nHost: l\\r\\nConnection: close\\r\\n\\r\\n' >&3 && head -c 12 <&3 | grep -q 200"]
ENTRYPOINT ["/usr/local/bin/app"]
CMD ["serve"]

# A container image of stt-server, streamed to `docker load` (or `podman load`) rather than
# kept as a tarball in the store: the CUDA variant is many GiB.
#   nix build .#image && ./result | docker load           # stt-server:0.1.0
#   nix build .#image-cuda && ./result | docker load      # stt-server-cuda:0.1.0
#   docker run --gpus all -p 15751:15751 -v stt-models:/var/cache/stt-server stt-server-cuda:0.1.0
# Its program is stt-server (flags go after the image name) as user 10001, the user the
# Kubernetes manifests (deploy/kubernetes) run it as, with the caches of the systemd unit.
{
  dockerTools,
  cacert,
  stt-server,
  name ? "stt-server",
}:

let
  uid = "10001";
  cache = "/var/cache/stt-server";
in
dockerTools.streamLayeredImage {
  inherit name;
  tag = stt-server.version;

  # cacert also puts /etc/ssl/certs in place, for downloading model weights over HTTPS.
  contents = [
    stt-server
    cacert
  ];

  # Run under fakeroot, in the image's root: writable /tmp, and a cache directory the user owns
  # (mount a volume there to keep downloaded weights).
  fakeRootCommands = ''
    mkdir -p ./tmp .${cache}
    chmod 1777 ./tmp
    chown ${uid}:${uid} .${cache}
  '';

  config = {
    Entrypoint = [ "${stt-server}/bin/stt-server" ];
    User = "${uid}:${uid}";
    ExposedPorts."15751/tcp" = { };
    Env = [
      "SSL_CERT_FILE=${cacert}/etc/ssl/certs/ca-bundle.crt"
      "STT_HOST=0.0.0.0"
      "HOME=${cache}"
      "XDG_CACHE_HOME=${cache}"
      "HF_HOME=${cache}/huggingface"
      "HF_HUB_CACHE=${cache}/huggingface/hub"
      "NUMBA_CACHE_DIR=${cache}/numba"
    ];
    Volumes.${cache} = { };
    Labels = {
      "org.opencontainers.image.title" = name;
      "org.opencontainers.image.description" = stt-server.meta.description;
    };
  };
}

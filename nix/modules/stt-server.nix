# NixOS module: services.stt-server, the server as a hardened systemd service.
#
# Option defaults are documented in README.md (section "Nix"); tests/nix evaluates this file and
# checks the table there against it. deploy/stt-server.service carries the same hardening for
# hosts without Nix, also checked by tests/nix.
{
  config,
  lib,
  pkgs,
  utils,
  ...
}:

let
  cfg = config.services.stt-server;
  cacheDir = "/var/cache/stt-server";
  cuda = cfg.device == "cuda";

  # CUDA opens /dev/nvidiactl, /dev/nvidia<N> (major "nvidia-frontend"), /dev/nvidia-uvm(-tools)
  # and, with MIG, /dev/nvidia-caps/*. The char-* groups cover every GPU without naming them; a
  # group whose driver module is not loaded yet is skipped by systemd, so load nvidia_uvm at boot.
  nvidiaDeviceAllow = [
    "char-nvidia-frontend rw"
    "char-nvidia-uvm rw"
    "char-nvidia-caps rw"
  ];

  args = [
    "${cfg.package}/bin/stt-server"
    "--host"
    cfg.host
    "--port"
    (toString cfg.port)
    "--engine"
    cfg.engine
    "--device"
    cfg.device
  ]
  ++ lib.optionals (cfg.model != null) [
    "--model"
    cfg.model
  ]
  ++ cfg.extraArgs;
in
{
  options.services.stt-server = {
    enable = lib.mkEnableOption "the stt-server speech-to-text WebSocket server";

    package = lib.mkOption {
      type = lib.types.package;
      default = pkgs.stt-server;
      defaultText = lib.literalExpression "pkgs.stt-server";
      description = "The stt-server package (from this flake's overlay).";
    };

    host = lib.mkOption {
      type = lib.types.str;
      default = "0.0.0.0";
      description = "Address to bind.";
    };

    port = lib.mkOption {
      type = lib.types.port;
      default = 15751;
      description = "TCP port for HTTP and WebSocket.";
    };

    device = lib.mkOption {
      type = lib.types.enum [
        "cuda"
        "cpu"
      ];
      default = "cuda";
      description = "Where inference runs; cuda needs nixpkgs.config.cudaSupport = true.";
    };

    engine = lib.mkOption {
      type = lib.types.enum [
        "canary-qwen"
        "whisper"
      ];
      default = "canary-qwen";
      description = "ASR engine.";
    };

    model = lib.mkOption {
      type = lib.types.nullOr lib.types.str;
      default = null;
      description = "Hugging Face hub id or local directory; null uses the engine's default.";
    };

    openFirewall = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "Open the TCP port in the firewall.";
    };

    extraArgs = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      description = "Further command-line arguments for stt-server.";
    };

    environment = lib.mkOption {
      type = lib.types.attrsOf lib.types.str;
      default = { };
      description = "Extra environment variables; they override the module's own.";
    };
  };

  config = lib.mkIf cfg.enable {
    networking.firewall.allowedTCPPorts = lib.optionals cfg.openFirewall [ cfg.port ];

    systemd.services.stt-server = {
      description = "stt-server: real-time speech-to-text over WebSocket";
      wantedBy = [ "multi-user.target" ];
      # The first start downloads model weights.
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];

      environment = {
        STT_DEVICE = cfg.device;
        HOME = cacheDir;
        XDG_CACHE_HOME = cacheDir;
        HF_HOME = "${cacheDir}/huggingface";
        HF_HUB_CACHE = "${cacheDir}/huggingface/hub";
        NUMBA_CACHE_DIR = "${cacheDir}/numba";
      }
      // cfg.environment;

      serviceConfig = {
        Type = "simple";
        ExecStart = utils.escapeSystemdExecArgs args;
        Restart = "on-failure";
        RestartSec = "5s";

        DynamicUser = true;
        CacheDirectory = "stt-server";
        CacheDirectoryMode = "0750";
        UMask = "0077";

        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        NoNewPrivileges = true;
        CapabilityBoundingSet = "";
        AmbientCapabilities = "";
        RestrictAddressFamilies = [
          "AF_INET"
          "AF_INET6"
          "AF_UNIX"
        ];
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        LockPersonality = true;
        ProtectClock = true;
        ProtectHostname = true;
        ProtectKernelLogs = true;
        ProtectKernelModules = true;
        ProtectKernelTunables = true;
        ProtectControlGroups = true;
        ProtectProc = "invisible";
        SystemCallArchitectures = "native";
        SystemCallFilter = [
          "@system-service"
          "~@privileged"
        ];
        SystemCallErrorNumber = "EPERM";
        # No MemoryDenyWriteExecute: torch, onnxruntime and the CUDA driver map executable memory.
        # No ProcSubset=pid: torch and onnxruntime read /proc/cpuinfo and /proc/meminfo.

        PrivateDevices = !cuda;
      }
      // lib.optionalAttrs cuda {
        DevicePolicy = "closed";
        DeviceAllow = nvidiaDeviceAllow;
      };
    };
  };
}

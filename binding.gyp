{
  "targets": [
    {
      "target_name": "tcp_punch",
      "sources": [
        "native/binding.cc",
        "native/binding_punch.cc",
        "native/binding_pump.cc",
        "native/binding_accept.cc",
        "native/acceptor.cc",
        "native/socket.cc",
        "native/socket_rtt.cc",
        "native/punch.cc",
        "native/pump.cc",
        "native/pump_session.cc",
        "native/pump_dir.cc",
        "native/pipe_pool.cc"
      ],
      "dependencies": [
        "<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"
      ],
      "defines": [
        "NAPI_VERSION=8"
      ],
      "cflags": [
        "-Wall",
        "-Wextra",
        "-Werror"
      ],
      "cflags_cc": [
        "-std=c++17",
        "-Wall",
        "-Wextra",
        "-Werror"
      ],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
        "MACOSX_DEPLOYMENT_TARGET": "10.15",
        "GCC_TREAT_WARNINGS_AS_ERRORS": "YES",
        "WARNING_CFLAGS": [
          "-Wall",
          "-Wextra"
        ]
      },
      # Linux: the C++ runtime linked in, so a prebuild needs only glibc (and libm) of the machine it runs on.
      "conditions": [
        [
          "OS=='linux'",
          {
            "ldflags": [
              "-static-libstdc++",
              "-static-libgcc"
            ]
          }
        ]
      ]
    }
  ]
}

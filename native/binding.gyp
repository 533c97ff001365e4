{
  # Nightjar's Node-API addon. Built by `npm ci` (tools/build-native.mjs runs `node-gyp rebuild` here);
  # the output is native/build/Release/nightjar_native.node. On macOS it links the frameworks the calls need;
  # everywhere else it compiles to the stub whose every call answers "unsupported".
  "targets": [
    {
      "target_name": "nightjar_native",
      "sources": ["src/nightjar_native.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Werror=return-type"],
      "conditions": [
        [
          "OS=='mac'",
          {
            "xcode_settings": {
              "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
              "MACOSX_DEPLOYMENT_TARGET": "13.0",
              "GCC_ENABLE_CPP_EXCEPTIONS": "NO",
              "OTHER_CPLUSPLUSFLAGS": ["-Wall", "-Wextra"]
            },
            "link_settings": {
              "libraries": [
                "-framework CoreFoundation",
                "-framework Security",
                "-framework IOKit",
                "-framework Foundation",
                "-lobjc"
              ]
            }
          }
        ]
      ]
    }
  ]
}

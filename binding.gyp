{
  "targets": [
    {
      "target_name": "lanepir",
      "sources": [
        "native/addon.cc",
        "native/cpu.cc",
        "native/lane.cc",
        "native/files.cc",
        "native/files_binding.cc",
        "native/aes.cc",
        "native/keccak.cc",
        "native/answer.cc",
        "native/pool.cc",
        "native/shard_cache.cc",
        "native/exchange.cc",
        "native/executor.cc",
        "native/exchange_binding.cc",
        "native/hint.cc",
        "native/control.cc",
        "native/control_binding.cc",
        "native/kernels_portable.cc",
        "native/kernels_avx2.cc",
        "native/kernels_avxvnni.cc",
        "native/kernels_avx512.cc",
        "native/kernels_avx512vnni.cc",
        "native/kernels_avx512vbmi.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-O3", "-fexceptions", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "conditions": [
        ["OS=='mac'", {
          "xcode_settings": {
            "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
            "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
            "OTHER_CPLUSPLUSFLAGS": ["-O3"]
          }
        }]
      ]
    }
  ]
}

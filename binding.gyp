{
  "targets": [
    {
      "target_name": "bulwark_crypto",
      "sources": ["native/crypto.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    },
    {
      "target_name": "bulwark_fs",
      "sources": ["native/fs.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"]
    }
  ]
}

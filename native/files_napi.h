// JS <-> C++ for file identities ({dev, ino, size, mtimeNs}, each a BigInt or
// a safe integer Number), shared by openLane and hashFiles.
#pragma once
#include <napi.h>

#include <string>
#include <vector>

#include "files.h"

namespace lanepir {

// An array of identities, or an empty vector for undefined/null. Throws NativeError EPARAMS.
std::vector<FileIdentity> identitiesArg(const Napi::Value& v, const std::string& what);

}  // namespace lanepir

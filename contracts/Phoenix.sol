// SPDX-License-Identifier: MIT
// A contract that is destroyed and created again at the same address (CREATE2
// with the same salt and init code), for the pre-Cancun self-destruct tests.
pragma solidity 0.8.26;

/// Storage: slot 0 `born` (the block of the latest creation), slot 1 the
/// mapping `slots` (keccak256(pad32(key) ‖ pad32(1))).
contract Phoenix {
    uint256 public born;
    mapping(uint256 => uint256) public slots;

    constructor() payable {
        born = block.number;
    }

    function fill(uint256 from, uint256 count, uint256 value) external {
        for (uint256 i = 0; i < count; i++) slots[from + i] = value + i;
    }

    function destroy(address payable to) external {
        selfdestruct(to);
    }
}

/// Creates Phoenix at a fixed address (CREATE2), and runs a self-destruct
/// that is reverted (the storage must survive it).
contract PhoenixFactory {
    function deploy(bytes32 salt) external returns (Phoenix p) {
        p = new Phoenix{salt: salt}();
    }

    function destroyReverted(Phoenix p) external {
        try this.destroyThenRevert(p) {} catch {}
    }

    function destroyThenRevert(Phoenix p) external {
        p.destroy(payable(msg.sender));
        revert("undone");
    }
}

// SPDX-License-Identifier: MIT
// Contracts for lanepir's tests and demo chain (compiled by contracts/compile.mjs
// into contracts/build.json, which is committed).
pragma solidity 0.8.26;

/// A minimal ERC-20. Storage layout (the hot manifest relies on it):
/// slot 0 balanceOf (Solidity mapping: keccak256(pad32(holder) ‖ pad32(0))),
/// slot 1 allowance, slot 2 totalSupply.
contract Token {
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;
    uint256 public totalSupply;

    string public constant name = "Lane Token";
    string public constant symbol = "LANE";
    uint8 public constant decimals = 18;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    constructor(uint256 supply, address holder) {
        balanceOf[holder] = supply;
        totalSupply = supply;
        emit Transfer(address(0), holder, supply);
    }

    function transfer(address to, uint256 value) external returns (bool) {
        _move(msg.sender, to, value);
        return true;
    }

    function approve(address spender, uint256 value) external returns (bool) {
        allowance[msg.sender][spender] = value;
        emit Approval(msg.sender, spender, value);
        return true;
    }

    function transferFrom(address from, address to, uint256 value) external returns (bool) {
        uint256 allowed = allowance[from][msg.sender];
        require(allowed >= value, "allowance");
        if (allowed != type(uint256).max) allowance[from][msg.sender] = allowed - value;
        _move(from, to, value);
        return true;
    }

    function _move(address from, address to, uint256 value) private {
        uint256 balance = balanceOf[from];
        require(balance >= value, "balance");
        unchecked {
            balanceOf[from] = balance - value;
        }
        balanceOf[to] += value;
        emit Transfer(from, to, value);
    }
}

/// Creates tokens from a contract (CREATE inside a call: the new token's
/// constructor writes storage before its address is known to a tracer).
contract TokenFactory {
    event Created(address token);

    function create(uint256 supply) external returns (Token token) {
        token = new Token(supply, msg.sender);
        emit Created(address(token));
    }
}

/// Forwards its value and removes itself in its constructor (EIP-6780: an
/// account created and self-destructed in one transaction never exists).
contract Ephemeral {
    constructor(address payable to) payable {
        selfdestruct(to);
    }
}

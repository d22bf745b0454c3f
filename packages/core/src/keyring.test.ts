import { expect, test } from "vitest";
import { newKeySpec, parseKeyRing } from "./keyring.ts";

test("a bad key spec is refused with the key named", () => {
  expect(() => parseKeyRing("k1:dG9vIHNob3J0")).toThrow(/k1/);
  expect(() => parseKeyRing("")).toThrow(/at least one/);
});

test("ciphertext is bound to its app: moving it to another app does not decrypt", () => {
  const ring = parseKeyRing(newKeySpec("k1"));
  const enc = ring.encrypt(Buffer.from("secret"), "app-a");
  expect(ring.decrypt(enc.keyId, enc.nonce, enc.ciphertext, "app-a").toString()).toBe("secret");
  expect(() => ring.decrypt(enc.keyId, enc.nonce, enc.ciphertext, "app-b")).toThrow();
});

test("a ring with a new key in front encrypts with it and still decrypts the old key's ciphertext", () => {
  const k1 = newKeySpec("k1");
  const old = parseKeyRing(k1).encrypt(Buffer.from("v1"), "app");
  const ring = parseKeyRing(`${newKeySpec("k2")},${k1}`);
  expect(ring.currentId).toBe("k2");
  expect(ring.encrypt(Buffer.from("v2"), "app").keyId).toBe("k2");
  expect(ring.decrypt(old.keyId, old.nonce, old.ciphertext, "app").toString()).toBe("v1");
});

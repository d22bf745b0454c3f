import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { Invalid } from "./errors.ts";

/**
 * Platform keys for encrypting config vars at rest (AES-256-GCM). The first key
 * encrypts; every key decrypts, so a new key can be put in front and old rows
 * re-encrypted at leisure (ConfigStore.rotate in services/api, `npm run rotate-config-keys`).
 * Lives in core because the api (writes config vars) and the builder (reads them
 * for build-time env) both hold the ring.
 */
export interface KeyRing {
  currentId: string;
  encrypt(plaintext: Buffer, aad: string): { keyId: string; nonce: Buffer; ciphertext: Buffer };
  decrypt(keyId: string, nonce: Buffer, ciphertext: Buffer, aad: string): Buffer;
}

/** Parses `id:base64key[,id:base64key…]`; the first key is current. */
export function parseKeyRing(spec: string): KeyRing {
  const keys = new Map<string, Buffer>();
  let currentId = "";
  for (const part of spec.split(",").map((s) => s.trim()).filter(Boolean)) {
    const i = part.indexOf(":");
    const id = part.slice(0, i);
    const key = Buffer.from(part.slice(i + 1), "base64");
    if (i <= 0 || !/^[A-Za-z0-9_-]{1,32}$/.test(id) || key.length !== 32) {
      throw new Invalid(`config key "${id || part.slice(0, 8)}" must be id:base64 of 32 bytes`);
    }
    keys.set(id, key);
    currentId ||= id;
  }
  if (!currentId) throw new Invalid("at least one config key is required");
  return {
    currentId,
    encrypt(plaintext, aad) {
      const nonce = randomBytes(12);
      const c = createCipheriv("aes-256-gcm", keys.get(currentId)!, nonce);
      c.setAAD(Buffer.from(aad));
      const body = Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]);
      return { keyId: currentId, nonce, ciphertext: body };
    },
    decrypt(keyId, nonce, ciphertext, aad) {
      const key = keys.get(keyId);
      if (!key) throw new Error(`config key ${keyId} is not in the key ring`);
      const d = createDecipheriv("aes-256-gcm", key, nonce);
      d.setAAD(Buffer.from(aad));
      d.setAuthTag(ciphertext.subarray(ciphertext.length - 16));
      return Buffer.concat([d.update(ciphertext.subarray(0, ciphertext.length - 16)), d.final()]);
    },
  };
}

/** A fresh `id:base64` key, for tests and first starts. */
export function newKeySpec(id = "k1"): string {
  return `${id}:${randomBytes(32).toString("base64")}`;
}

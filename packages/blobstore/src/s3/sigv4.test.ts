import { describe, expect, it } from "vitest";
import { presignUrl, uriEncode } from "./sigv4.ts";

describe("sigv4 presigning", () => {
  it("matches the example in the S3 documentation", () => {
    // https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html
    const url = presignUrl({
      method: "GET",
      url: new URL("https://examplebucket.s3.amazonaws.com/test.txt"),
      region: "us-east-1",
      credentials: { accessKeyId: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY" },
      expiresInSec: 86400,
      now: new Date("2013-05-24T00:00:00Z"),
    });
    expect(url.searchParams.get("X-Amz-Signature")).toBe(
      "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404",
    );
    expect(url.searchParams.get("X-Amz-Credential")).toBe("AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request");
  });

  it("encodes as RFC 3986 wants", () => {
    expect(uriEncode("a b+c*d'e(f)!~._-/ü")).toBe("a%20b%2Bc%2Ad%27e%28f%29%21~._-%2F%C3%BC");
  });
});

// Declarations of the few Foundation classes the host code uses, so it can be type-checked on Linux
// (clang++ -x objective-c++ -fsyntax-only, tests/test_metal_kernels.py). Written from Apple's
// documentation, not copied from its SDK; they check the host code's syntax and its consistency with
// rotorjax_metal.h, not that Apple's API is what they say (docs/metal.md).
#pragma once

typedef unsigned long NSUInteger;
typedef signed char BOOL;
#define nil nullptr
#define MIN(a, b) ((a) < (b) ? (a) : (b))

@protocol NSObject
@end

@interface NSObject <NSObject>
+ (instancetype)alloc;
- (instancetype)init;
@end

@interface NSString : NSObject
+ (instancetype)stringWithUTF8String:(const char*)string;
@property(readonly) const char* UTF8String;
@end

@interface NSError : NSObject
@property(readonly, copy) NSString* localizedDescription;
@end

@interface NSURL : NSObject
+ (NSURL*)fileURLWithPath:(NSString*)path;
@end

@interface NSArray<__covariant ObjectType> : NSObject
@end

@interface NSMutableArray<ObjectType> : NSArray<ObjectType>
+ (instancetype)array;
- (void)addObject:(ObjectType)object;
@end
